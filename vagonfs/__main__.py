from vagonfs.cli.main import main

raise SystemExit(main())

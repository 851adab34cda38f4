from vagonfs.cli import main

raise SystemExit(main())

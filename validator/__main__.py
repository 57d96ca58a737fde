from validator.cli import main

raise SystemExit(main())

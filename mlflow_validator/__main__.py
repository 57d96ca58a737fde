from mlflow_validator.cli import main

raise SystemExit(main())

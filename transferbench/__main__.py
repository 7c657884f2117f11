from transferbench.cli import main

raise SystemExit(main())

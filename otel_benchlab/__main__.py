from otel_benchlab.cli import main

raise SystemExit(main())

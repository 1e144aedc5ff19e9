from recon3d.cli import main

raise SystemExit(main())

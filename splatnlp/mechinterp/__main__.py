"""``python -m splatnlp.mechinterp`` runs the CLI."""

from splatnlp.mechinterp.cli import main

raise SystemExit(main())

"""One module per byokctl command group; `byokctl.cli` maps subcommands to them."""

"""More ``crm`` commands; each module decorates functions with ``crm_cli.command``."""

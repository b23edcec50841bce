from objectives_cli.cli.main import run

run()

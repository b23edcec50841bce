from objectives_cli.main import run

run()

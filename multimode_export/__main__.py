"""`python -m multimode_export`: the `multimode-export` command line."""

from multimode_export.integration import _cli as cli

if __name__ == '__main__':
  cli.run()

"""Wording shared by the reports of `inspect` and `verify`."""


def count(number: int, noun: str) -> str:
  """'1 file', '3 files'."""
  return f'{number} {noun}' + ('' if number == 1 else 's')

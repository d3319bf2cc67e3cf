"""``python -m clinvk.cli``: the same entry point as the ``clinvk`` command."""

from clinvk.cli.root import main

if __name__ == "__main__":
    main()

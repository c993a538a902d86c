from archspec.cli import main

main()

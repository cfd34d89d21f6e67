from irpo.cli import main

main()

from finpeft.cli import main

main()

from paas.cli import main

main()

from paas.entry import main

main()

from bridgectl.app import main

main()

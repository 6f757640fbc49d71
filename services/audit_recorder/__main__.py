from audit_recorder.main import main

main()

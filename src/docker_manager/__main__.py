from docker_manager.cli import main

main()

from launch.preflight.command import run

run()

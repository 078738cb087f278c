"""`python -m input.make_demo_data OUT_DIR`: the demo data set.

Only the entry point lives here; the command is launch/make_demo_data.py (entry points start in
launch/, which quiets TensorFlow's start) and the data set input/demo_data.py.
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("launch.make_demo_data", run_name="__main__", alter_sys=True)

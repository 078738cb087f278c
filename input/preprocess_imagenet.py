"""`python -m input.preprocess_imagenet ...`: the recipe's converter command.

Only the entry point lives here, under the name users of the recipe know; the command line is
defined in launch/preprocess_imagenet.py (flags live in launch/) and the conversion in
input/imagenet_converter.py.
"""
import runpy

if __name__ == "__main__":
    runpy.run_module("launch.preprocess_imagenet", run_name="__main__", alter_sys=True)

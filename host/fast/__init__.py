"""The fast software engine: refmodel's pipeline in numpy arrays with a numba-compiled loop."""

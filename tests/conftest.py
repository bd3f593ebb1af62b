import hypothesis

# Shapes are fixed per test so JAX compiles once; examples then run in microseconds.
hypothesis.settings.register_profile("prunax", max_examples=40, deadline=None, print_blob=True)
hypothesis.settings.load_profile("prunax")

"""Keras models: opening a user's file, Keras 3 <-> tf-keras, width groups, pixel scale, sanity."""

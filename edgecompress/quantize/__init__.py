"""Post-training conversion to `.tflite`: the schemes, the converter, the int8 debugger."""

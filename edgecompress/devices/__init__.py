"""Reaching devices: SSH (Fabric), the emulated Raspberry Pi OS, Android over adb, the demo APK."""

"""A VRF-capable lab of AlmaLinux-shaped hosts inside one qemu VM, reached over real SSH."""

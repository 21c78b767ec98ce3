"""Multi-view 3D human pose: cameras, synthetic scenes, datasets, VoxelPose and its metrics."""

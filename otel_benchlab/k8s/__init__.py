"""Kubernetes: which pod holds which GPU (the kubelet's PodResources API)."""

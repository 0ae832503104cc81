"""Kubernetes: which pod holds which GPU (the kubelet's PodResources API), a component
like the receivers (``podresources``), with its gRPC stubs generated from proto/ in
``_gen``. May import the ground floor only."""

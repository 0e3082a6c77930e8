"""Training-free accelerations of a built CogACT policy (EfficientVLA and the FastV baseline): pruned LLM layers,
pruned MLP channels, task-aware visual token selection, cached DiT features. Each is an object applied to a policy;
``policies.presets`` combines them."""

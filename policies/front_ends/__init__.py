"""Vision(-language) front ends: image(s) and, for the fusion ones, the instruction -> visual tokens for the projector.

Every front end is a ``FrontEnd``: ``preprocess`` turns RGB frames into its own pixel tensors (its image size,
mean and std), ``tokenize`` turns instructions into its own text ids (fusion front ends only, with their own
tokenizer), and ``encode`` returns a ``FrontEndOutput``: visual tokens (B, N, D), an optional token mask (B, N) and a
pooled vector (B, P). ``num_tokens`` (N), ``token_dim`` (D, the projector's input), ``pooled_dim`` (P) and
``uses_instruction`` describe it; ``flop_count`` gives its FLOPs for ``policies.flops``.

| type          | module                            | N at 224 px          | instruction                              |
|---------------|-----------------------------------|----------------------|------------------------------------------|
| ``dinosiglip``| ``policies.front_ends.dinosiglip``| 256                  | no                                       |
| ``fiber``     | ``policies.front_ends.fiber``     | 49                   | gated cross-attention in the backbones   |
| ``bridgetower``| ``policies.front_ends.bridgetower``| 197 (CLS + 196)     | cross-modal image stream                 |
| ``hicropl``   | ``policies.front_ends.hicropl``   | 196                  | text -> vision prompt flow (task-aware)  |
| ``frozenllm`` | ``policies.front_ends.frozen_llm``| the ViT's (256)      | no                                       |

The interface is in ``base``. Each front end's config section, rules and ``FrontEndSpec`` are in a torch-free
``<module>_config`` beside it; ``registry`` lists the specs (``VisionConfig`` reads them) and ``build_front_end`` builds
the one chosen. This package imports nothing eagerly.
"""

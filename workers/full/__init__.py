"""Full ImageNet training of promoted designs (docs/design.md §6, issue 7).

- `workers.full.train`: `train_full(...)` -> `FullResult`, the Python API (imports Ray);
- `workers.full.loop`: the loop each Ray Train worker runs (DDP, checkpoints, resume);
- `workers.full.data`, `workers.full.transforms`: ImageNet folders, decoding, augmentation;
- `workers.full.recipe`: the papers' recipes (`clnas.recipe/1`); `workers.full.optim` applies them;
- `workers.full.export`: safetensors weights, arch document, ONNX export checked with onnxruntime;
- `workers.full.ranking`: Kendall tau between proxy and full accuracies;
- `workers.full.cli`: `clnas train`.

Nothing is imported here, so `clnas` commands other than `train` do not load Ray."""

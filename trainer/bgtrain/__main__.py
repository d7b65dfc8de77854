"""``python -m bgtrain`` == ``train-model`` (so ``torchrun -m bgtrain ...`` works)."""

from .cli import main

main()

"""python -m mnist_probe.bench"""

from mnist_probe.bench.cli import main

main()

"""transferbench: how transferable are features in deep neural networks?"""

__version__ = "0.1.0"

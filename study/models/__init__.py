"""Models: dilated timm backbones with strict pretrained loading (backbone.py), named pretrained weights inside
installed packages (pretrained.py), the pyramid pooling module (ppm.py), the main and auxiliary heads (heads.py),
PSPNet itself (pspnet.py) and the one place run code asks for a model (build.py)."""

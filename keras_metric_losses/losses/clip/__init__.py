"""Image-text contrastive losses of open_clip 3.3.0: CLIP's symmetric InfoNCE and SigLIP's
pairwise sigmoid loss."""

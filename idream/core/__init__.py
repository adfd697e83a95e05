"""The method: the denoiser, the diffusion and its sampler, the item-space transform, text
steering and the new-item rule."""

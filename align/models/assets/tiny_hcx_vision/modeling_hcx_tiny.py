"""A tiny stand-in for HyperCLOVAX-SEED-Vision-Instruct-3B's remote code (``HCXVisionForCausalLM``).

Interface kept from the published model (as vLLM 0.27's implementation documents it): modules ``vision_model``
(SigLIP), ``mm_projector``, ``language_model`` (a causal LM); one image placeholder token (``<|dummy3|>``,
``config.image_token_id``) per image in ``input_ids``, which the model replaces by that image's
``vision_query_lengths_images`` visual tokens inside ``forward``; image tensors as ``pixel_values_images``; labels, when
given, already expanded to the visual tokens (visual positions -100). Not HyperCLOVAX's code: no C-Abstractor, no
AnyRes, no video."""

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_hcx_tiny import HCXVisionConfig


class HCXVisionForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = HCXVisionConfig
    base_model_prefix = "hcx"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.vision_model = AutoModel.from_config(config.vision_config)
        self.mm_projector = nn.Linear(config.vision_config.hidden_size, config.text_config.hidden_size)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def image_features(self, pixel_values_images):
        """[batch, images, 3, H, W] -> one [tokens, hidden] tensor per image, in order."""
        flat = pixel_values_images.reshape(-1, *pixel_values_images.shape[-3:]).to(self.mm_projector.weight.dtype)
        hidden = self.vision_model(pixel_values=flat).last_hidden_state
        return list(self.mm_projector(hidden).unbind(0))

    def expand(self, input_ids, attention_mask=None, pixel_values_images=None, vision_query_lengths_images=None):
        """Embeddings and attention mask with every placeholder replaced by its image's visual tokens."""
        embed = self.get_input_embeddings()
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if pixel_values_images is None:
            return embed(input_ids), attention_mask
        features = iter(self.image_features(pixel_values_images))
        rows, masks = [], []
        for ids, mask in zip(input_ids, attention_mask):
            pieces, mpieces, start = [], [], 0
            for pos in (ids == self.config.image_token_id).nonzero().flatten().tolist():
                feat = next(features)
                pieces += [embed(ids[start:pos]), feat]
                mpieces += [mask[start:pos], mask.new_ones(feat.shape[0])]
                start = pos + 1
            pieces.append(embed(ids[start:]))
            mpieces.append(mask[start:])
            rows.append(torch.cat(pieces))
            masks.append(torch.cat(mpieces))
        width = max(r.shape[0] for r in rows)  # left-pad rows whose images gave fewer tokens
        embeds = torch.stack([torch.cat([r.new_zeros(width - r.shape[0], r.shape[1]), r]) for r in rows])
        mask = torch.stack([torch.cat([m.new_zeros(width - m.shape[0]), m]) for m in masks])
        return embeds, mask

    def forward(self, input_ids=None, attention_mask=None, pixel_values_images=None, image_sizes_images=None,
                vision_query_lengths_images=None, labels=None, past_key_values=None, inputs_embeds=None,
                use_cache=None, logits_to_keep=0, **kwargs):
        if inputs_embeds is None:
            if past_key_values is not None and past_key_values.get_seq_length() > 0:
                inputs_embeds = self.get_input_embeddings()(input_ids)
            else:
                inputs_embeds, attention_mask = self.expand(input_ids, attention_mask, pixel_values_images,
                                                            vision_query_lengths_images)
        if labels is not None and labels.shape[1] != inputs_embeds.shape[1]:
            raise ValueError(f"labels have {labels.shape[1]} positions but the input expands to "
                             f"{inputs_embeds.shape[1]}: expand labels by vision_query_lengths_images")
        out = self.language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels,
                                  past_key_values=past_key_values, use_cache=use_cache,
                                  logits_to_keep=logits_to_keep)
        return CausalLMOutputWithPast(loss=out.loss, logits=out.logits, past_key_values=out.past_key_values)

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, pixel_values_images=None, image_sizes_images=None,
                 vision_query_lengths_images=None, **kwargs):
        """Like the published model: expand the prompt, generate from embeddings, return prompt + new tokens."""
        embeds, mask = self.expand(input_ids, attention_mask, pixel_values_images, vision_query_lengths_images)
        self.language_model.generation_config = self.generation_config
        out = self.language_model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        new = out if isinstance(out, torch.Tensor) else out.sequences
        prompt = input_ids.repeat_interleave(new.shape[0] // input_ids.shape[0], dim=0)  # num_return_sequences
        sequences = torch.cat([prompt, new.to(input_ids.device)], dim=1)
        if isinstance(out, torch.Tensor):
            return sequences
        out.sequences = sequences
        return out

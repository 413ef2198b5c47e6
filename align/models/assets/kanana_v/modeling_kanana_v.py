"""Kanana-1.5-v for the workbench's tiny test checkpoint (written by korean-vlm-align from the weight names and
config fields vLLM 0.32's ``kanana_v`` module loads; not Kakao's code).

Qwen2-VL vision transformer without its patch merger (``vision_model``) -> dynamic C-Abstractor (``abstractor``:
learned position embedding resampled to the image grid, RegNet stage, 2×2 patch merge, RegNet stage, MLP readout;
the RegNet blocks laid out as timm's ``RegStage``/``Bottleneck`` with LayerNorm2d and SiLU) -> Llama LM
(``language_model``). Each image's features replace its run of placeholder tokens (``config.image_token_id``: the
token after the LM's end-of-text token).

In memory the model has transformers 5's VLM layout (a backbone ``model`` returning hidden states, ``lm_head`` on
top), which TRL's fused LM head needs; on disk it keeps the published names (``vision_model.*``, ``abstractor.*``,
``language_model.model.*``, ``language_model.lm_head.weight``): a registered checkpoint conversion renames them on
load and back on save.
"""

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, LlamaModel, PreTrainedModel
from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

try:
    from .configuration_kanana_v import KananaVConfig
except ImportError:  # loaded as a plain module
    from configuration_kanana_v import KananaVConfig


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class ConvNormAct(nn.Module):
    def __init__(self, cin, cout, kernel, groups=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False)
        self.bn = LayerNorm2d(cout, eps=1e-5)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SEModule(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class Bottleneck(nn.Module):
    """RegNet bottleneck: 1×1, depthwise 3×3, squeeze-excite (a quarter of the input channels), 1×1, shortcut."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 1)
        self.conv2 = ConvNormAct(cout, cout, 3, groups=cout)
        self.se = SEModule(cout, round(cin * 0.25))
        self.conv3 = ConvNormAct(cout, cout, 1, act=False)
        self.downsample = ConvNormAct(cin, cout, 1, act=False) if cin != cout else nn.Identity()
        self.act3 = nn.SiLU()

    def forward(self, x):
        return self.act3(self.conv3(self.se(self.conv2(self.conv1(x)))) + self.downsample(x))


class RegStage(nn.Module):
    def __init__(self, depth, cin, cout):
        super().__init__()
        for i in range(depth):
            self.add_module(f"b{i + 1}", Bottleneck(cin if i == 0 else cout, cout))

    def forward(self, x):
        for block in self.children():
            x = block(x)
        return x


class PatchMerge(nn.Module):
    def __init__(self, merge_size):
        super().__init__()
        self.merge_size = merge_size

    def forward(self, x):  # B D (H m) (W m) -> B (D m m) H W
        b, d, h, w = x.shape
        m = self.merge_size
        x = x.reshape(b, d, h // m, m, w // m, m).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, d * m * m, h // m, w // m)


class DynamicCAbstractor(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config, self.merge_size = config, config.merge_size
        enc, hidden = config.encoder_hidden_size, config.hidden_size
        self.pos_emb = nn.Parameter(torch.zeros(1, config.pos_emb_size, enc)) if config.pos_emb else None
        if config.depth:
            self.net = nn.ModuleList(
                [
                    RegStage(config.depth, enc, hidden),
                    PatchMerge(config.merge_size),
                    RegStage(config.depth, config.merge_size**2 * hidden, hidden),
                ]
            )
            readout_in = hidden
        else:
            self.net = PatchMerge(config.merge_size)
            readout_in = enc * config.merge_size**2
        layers = [nn.Linear(readout_in, config.output_hidden_size)]
        for _ in range(1, config.mlp_depth):
            layers += [nn.SiLU(), nn.Linear(config.output_hidden_size, config.output_hidden_size)]
        self.readout = nn.Sequential(*layers)

    def forward(self, features, grid_thw):
        out = []
        for x, (t, h, w) in zip(torch.split(features, grid_thw.prod(-1).tolist()), grid_thw.tolist()):
            x = x.reshape(1, t, h, w, -1)[:, 0]  # one frame
            if self.pos_emb is not None:
                side = int(self.pos_emb.shape[1] ** 0.5)
                grid = self.pos_emb.reshape(1, side, side, -1).permute(0, 3, 1, 2)
                grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
                x = x + grid.permute(0, 2, 3, 1)
            x = x.permute(0, 3, 1, 2)
            if isinstance(self.net, nn.ModuleList):
                for layer in self.net:
                    x = layer(x)
            else:
                x = self.net(x)
            out.append(self.readout(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])))
        return torch.cat(out)


register_checkpoint_conversion_mapping(
    "KananaVForConditionalGeneration",
    [
        WeightRenaming(r"^language_model\.lm_head", "lm_head"),
        WeightRenaming(r"^language_model\.model", "model.language_model"),
        WeightRenaming(r"^vision_model", "model.vision_model"),
        WeightRenaming(r"^abstractor", "model.abstractor"),
    ],
    overwrite=True,
)


class KananaVPreTrainedModel(PreTrainedModel):
    config_class = KananaVConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules: ClassVar[list] = ["LlamaDecoderLayer"]

    def _init_weights(self, module):
        super()._init_weights(module)  # linear, conv, embedding, norms, rotary buffers
        if isinstance(module, DynamicCAbstractor) and module.pos_emb is not None:
            init.normal_(module.pos_emb, std=0.02)  # skips weights loaded from a checkpoint


class KananaVModel(KananaVPreTrainedModel):
    """Vision transformer, abstractor and language model; returns the language model's hidden states."""

    def __init__(self, config):
        super().__init__(config)
        self.vision_model = Qwen2VisionTransformerPretrainedModel._from_config(config.vision_config)
        self.vision_model.merger = nn.Identity()  # the abstractor replaces Qwen2-VL's merger (no merger weights)
        self.abstractor = DynamicCAbstractor(config.projector_config)
        self.language_model = LlamaModel._from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_image_features(self, pixel_values, image_grid_thw, **kwargs):
        """One feature vector per placeholder token: (images' merged patches, LM hidden size)."""
        vision = self.vision_model(pixel_values.to(self.vision_model.dtype), grid_thw=image_grid_thw)
        return self.abstractor(vision.last_hidden_state, image_grid_thw)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        pixel_values=None,
        image_grid_thw=None,
        use_cache=None,
        mm_token_type_ids=None,
        **kwargs,
    ):  # mm_token_type_ids: from the processor, unused
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None:
            features = self.get_image_features(pixel_values, image_grid_thw).to(inputs_embeds.dtype)
            mask = (input_ids == self.config.image_token_id).unsqueeze(-1).expand_as(inputs_embeds)
            if int(mask[..., 0].sum()) != features.shape[0]:
                raise ValueError(
                    f"Image features and image tokens do not match: tokens {int(mask[..., 0].sum())}, "
                    f"features {features.shape[0]}"
                )
            inputs_embeds = inputs_embeds.masked_scatter(mask, features)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            **kwargs,
        )


class KananaVForConditionalGeneration(KananaVPreTrainedModel, GenerationMixin):
    _tied_weights_keys: ClassVar[dict] = {
        "lm_head.weight": "model.language_model.embed_tokens.weight"
    }  # only if the config ties

    def __init__(self, config):
        super().__init__(config)
        self.model = KananaVModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def get_image_features(self, pixel_values, image_grid_thw, **kwargs):
        return self.model.get_image_features(pixel_values, image_grid_thw)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        labels=None,
        pixel_values=None,
        image_grid_thw=None,
        use_cache=None,
        logits_to_keep=0,
        mm_token_type_ids=None,
        **kwargs,
    ):
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            use_cache=use_cache,
            **kwargs,
        )
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(outputs.last_hidden_state[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

"""AnyRes geometry shared by the HCX processor (token counts) and model (feature layout), so the two cannot
disagree: which canvas an image is fitted to, how many grids it gives, what unpadding keeps."""

from __future__ import annotations


def grid_resolutions(max_num_grids: int, grid_size: int, use_1x1_grid: bool = False) -> list[list[int]]:
    """AnyRes canvases: every rows × cols layout of at most ``max_num_grids`` grids, in pixels [height, width]
    (1 × 1 only with ``use_1x1_grid``)."""
    if max_num_grids <= 0:
        raise ValueError("anyres needs max_num_grids > 0")
    return [[rows * grid_size, cols * grid_size] for rows in range(1, max_num_grids + 1)
            for cols in range(1, max_num_grids + 1)
            if rows * cols <= max_num_grids and ((rows, cols) != (1, 1) or use_1x1_grid)]  # fmt: skip


def best_resolution(height: int, width: int, candidates: list) -> tuple[int, int]:
    """The canvas ([height, width]) that keeps the most of the image's pixels after fitting it inside, and among
    equals wastes the least canvas (LLaVA-NeXT's rule)."""
    best, best_kept, best_waste = None, -1, float("inf")
    for ch, cw in candidates:
        scale = min(cw / width, ch / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        waste = ch * cw - kept
        if kept > best_kept or (kept == best_kept and waste < best_waste):
            best, best_kept, best_waste = (int(ch), int(cw)), kept, waste
    return best


def anyres_layout(size: tuple[int, int], candidates: list, grid: int) -> tuple[int, int]:
    """(rows, cols) of local grids for an image of ``size`` = (width, height)."""
    height, width = best_resolution(size[1], size[0], candidates)
    return height // grid, width // grid


def grids_per_image(size: tuple[int, int], anyres: bool, candidates: list, grid: int) -> int:
    """Pixel grids the processor makes for an image: the global view plus rows × cols local grids (AnyRes)."""
    if not anyres:
        return 1
    rows, cols = anyres_layout(size, candidates, grid)
    return 1 + rows * cols


def unpadded_shape(cur_h: int, cur_w: int, size: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of a cur_h × cur_w feature map left once the padding band (added to fit an image of
    ``size`` = (width, height) into the canvas) is cut away symmetrically."""
    width, height = size
    if width / height > cur_w / cur_h:
        kept = int(height * (cur_w / width))
        return cur_h - 2 * ((cur_h - kept) // 2), cur_w
    kept = int(width * (cur_h / height))
    return cur_h, cur_w - 2 * ((cur_w - kept) // 2)


def image_query_length(size: tuple[int, int], config) -> int:
    """Visual tokens an image of ``size`` = (width, height) becomes: the global grid's queries, then the local
    grids' (unpadded, one newline per row when ``unpad``)."""
    q = config.num_queries_vis_abstractor_image
    if not config.anyres:
        return q
    side = round(q**0.5)
    rows, cols = anyres_layout(size, config.possible_resolutions, config.vision_config.image_size)
    h, w = rows * side, cols * side
    if config.unpad:
        h, w = unpadded_shape(h, w, size)
        return q + h * w + h
    return q + h * w


def video_query_length(grids_per_canvas: list[int], config) -> int:
    """Visual tokens of a video whose canvases have these grid counts (see ``HCXVisionForCausalLM.encode_videos``)."""
    slow, fast = config.num_queries_vis_abstractor_video_slow, config.num_queries_vis_abstractor_video_fast
    total = sum(grids_per_canvas)
    if config.first_last_frames_slow:
        return total * slow if total <= 2 else 2 * slow + (total - 2) * fast
    return sum(slow + (g - 1) * fast for g in grids_per_canvas)

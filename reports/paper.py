"""The paper's own numbers, quoted from its text (../shared/paper/hode-paper.txt), for the tables.

The paper prints figures without data labels; only what its text states is quoted here. Where it
gives a trend but no number, the entry says so instead of guessing values off a picture.
"""
from __future__ import annotations

TITLE = ("Real-Time High-Resolution Pedestrian Detection in Crowded Scenes via Parallel Edge Offloading "
         "(HODE, Wang et al.)")

# Sec. III-B and the abstract: Infer-4K 6.02 fps -> HODE 12.13 fps, 2.01x, "less than 1% accuracy sacrifice".
FOURK_FPS = 6.02
HODE_FPS = 12.13
SPEEDUP = 2.01
MAP_LOSS_MAX = 0.01  # "< 1%"; the paper does not say whether relative or in mAP points: both are shown
# Sec. III-C: "the accuracy of our flow filtering can reach 98.96%".
FILTER_ACCURACY = 0.9896
# Sec. III-E: camera-side latency of the flow filter and of the scheduler.
FILTER_MS = 2.7
SCHEDULE_MS = 1.0
# Sec. I (Fig. 2): "If we use 1K resolution, the final mAP is only about 0.4".
MAP_AT_1K = 0.4
# Sec. I (Fig. 3): "the inference latency on some devices exceeds 500ms and even reaches several seconds".
SLOW_4K_MS = 500.0

SETUP = ("Paper setup (Sec. III-A): five edge nodes -- GTX1070 (YOLOv5m), GTX1050 and Jetson NX (YOLOv5s), "
         "Jetson NX and Jetson TX2 (YOLOv5n); an Intel NUC 11PAH as the camera; PANDA at 4K; 512x512 tiles.")

CLAIMS = {
    "fig2": "mAP grows with input resolution; about 0.4 at 1K (Sec. I). No other values are stated.",
    "fig3": "4K inference exceeds 500 ms on some devices and reaches several seconds (Sec. I). "
            "No per-device values are stated.",
    "fig8": "Training loss of the flow filter decreases and levels off (curve only, Sec. III-C).",
    "fig9": "Training loss of the DQN scheduler decreases and levels off (curve only, Sec. III-D).",
    "fig11": "Infer-4K 6.02 fps, HODE 12.13 fps (2.01x) with < 1% accuracy loss; Elf-based is below HODE "
             "in both fps and mAP, no number given (Sec. III-B).",
    "fig12": "The spatio-temporal flow filter reaches 98.96% accuracy; Comp-i are lower, no numbers given "
             "(Sec. III-C).",
    "fig13": "Under changing compute the DQN scheduler beats SALBS in fps and mAP; no numbers given "
             "(Sec. III-D).",
    "overhead": "Camera-side latency: flow filter 2.7 ms, scheduling 1 ms (Sec. III-E).",
}

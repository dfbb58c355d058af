"""Image and EPE figures of the session-9 validation runs (neutral->apex rows, large poses, synth):
FER2013 on G_W's faces over FER2013 on the real frontal faces, SSIM, EPE against a zero flow's.
    python docs/results/issue12/session9/images.py   # from the project folder
"""
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
LARGE = ["yaw", "pitch", "roll", "diagonal"]
for v in ["full", "no_gw", "full_s1", "no_gw_s1"]:
    R = pd.read_csv(HERE / v / "rows.csv")
    R = R[R.dataset == "synth"]
    na = R[(R.strategy == "neutral_apex") & R.pose.isin(LARGE)]
    f2f = R[(R.strategy != "neutral_apex") & R.pose.isin(LARGE)]

    def acc(d, c):
        return (d[c] == d.label).mean()
    print(f"{v:9s} FER2013 ratio from G_F's flow {acc(na, 'fer2013_emotiongan') / acc(na, 'fer2013_frontal_gt'):.2f}, "
          f"from the truth's {acc(na, 'fer2013_gw_gt') / acc(na, 'fer2013_frontal_gt'):.2f}; "
          f"SSIM {na.ssim_emotiongan.mean():.3f} (truth's flow {na.ssim_gw_gt.mean():.3f}); "
          f"EPE neutral->apex {na.epe_emotiongan.mean():.3f} / zero {na.epe_zero.mean():.3f} px, "
          f"frame-to-frame {f2f.epe_emotiongan.mean():.3f} / {f2f.epe_zero.mean():.3f} px")

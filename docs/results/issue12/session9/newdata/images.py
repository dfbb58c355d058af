"""Image figures of the fifth-round validation runs (neutral->apex rows, large poses, synth): FER2013 on G_W's
faces over FER2013 on the real frontal faces, the run's own e_FER on the same faces, SSIM.
    python docs/results/issue12/session9/newdata/images.py   # from the project folder
    python docs/results/issue12/session9/newdata/images.py docs/results/issue12/session10/long_s0 ...  # other runs
"""
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
for v in sys.argv[1:] or ["e8_s0", "e8_s1", "change_s0", "change_s1"]:
    R = pd.read_csv((HERE / v if (HERE / v).is_dir() else Path(v)) / "rows.csv")  # a run here, or any run folder
    na = R[(R.dataset == "synth") & (R.strategy == "neutral_apex") & R.pose.isin(["yaw", "pitch", "roll", "diagonal"])]

    def acc(c):
        return (na[c] == na.label).mean()
    print(f"{Path(v).name:9s} FER2013 real {acc('fer2013_frontal_gt'):.3f}, ratio from G_F's flow "
          f"{acc('fer2013_emotiongan') / acc('fer2013_frontal_gt'):.2f}, from the truth's "
          f"{acc('fer2013_gw_gt') / acc('fer2013_frontal_gt'):.2f}; e_FER real {acc('efer_frontal_gt'):.3f}, "
          f"G_F's {acc('efer_emotiongan'):.3f}, truth's {acc('efer_gw_gt'):.3f}; "
          f"SSIM {na.ssim_emotiongan.mean():.3f} (truth's flow {na.ssim_gw_gt.mean():.3f})")

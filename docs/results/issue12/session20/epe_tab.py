import sys, csv, numpy as np
LARGE={"yaw","pitch","roll","diagonal"}
for d in sys.argv[1:]:
    R=list(csv.DictReader(open(d+"/rows.csv")))
    def sel(strat, poses): return [r for r in R if r["strategy"]==strat and r["pose"] in poses]
    out=[]
    for strat,poses,lab in (("neutral_apex",LARGE,"NA large"),("neutral_apex",{"nothing"},"NA nothing"),("neutral_apex",{"tx"},"NA tx")):
        rr=sel(strat,poses)
        if not rr: continue
        e=np.mean([float(r["epe_emotiongan"]) for r in rr]); z=np.mean([float(r["epe_zero"]) for r in rr])
        acc=np.mean([r["flowcnn_emotiongan"]==r["label"] for r in rr]); 
        f=[r for r in rr if r["fer2013_emotiongan"] not in ("","-1")]
        fer=np.mean([r["fer2013_emotiongan"]==r["label"] for r in f]) if f else float("nan")
        fgt=np.mean([r["fer2013_frontal_gt"]==r["label"] for r in f]) if f else float("nan")
        ssim=np.nanmean([float(r["ssim_emotiongan"]) for r in f]) if f else float("nan")
        out.append(f"{lab}: EPE {e/z:.3f}x acc {acc*100:.1f} FER {fer:.3f}/{fgt:.3f} ssim {ssim:.3f}")
    print(d.split("/")[-1], " | ".join(out))

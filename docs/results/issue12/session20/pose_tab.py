import sys, csv, numpy as np
for d in sys.argv[1:]:
    R=list(csv.DictReader(open(d+"/rows.csv")))
    out=[]
    for strat in ("neutral_apex","frame_to_frame"):
        for p in ("yaw","pitch","roll","diagonal","nothing","tx"):
            rr=[r for r in R if r["strategy"]==strat and r["pose"]==p and r["dataset"]=="synth"]
            if not rr: continue
            a=np.mean([r["flowcnn_emotiongan"]==r["label"] for r in rr])*100
            e=np.mean([float(r["epe_emotiongan"]) for r in rr])/max(1e-9,np.mean([float(r["epe_zero"]) for r in rr]))
            out.append(f"{strat[:2]}-{p[:3]} {a:.0f}%/{e:.2f}x")
    print(d.split('/')[-1].ljust(22), " ".join(out))

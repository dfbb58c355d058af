"""The nets and their losses: eMotion-GAN's G_F, D_P, D_E, G_W and the image FER nets (NETS, built by name),
the paper's losses, e_FER loading and the FER2013 mini-Xception. Imports only torch and pipeline."""

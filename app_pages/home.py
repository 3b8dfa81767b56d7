"""Home: what Transfer Lab does, and a one-click start with the sample dataset."""

import streamlit as st

from app_pages import common

st.title("Transfer Lab")
st.markdown(
    """
Train an image classifier on **your own labelled photos** by reusing a network
already trained on ImageNet — *transfer learning* — and see every step:

1. **Dataset** — point at a folder or upload a zip (one subfolder per class);
   check counts, image sizes, unreadable files, duplicates and train/validation leaks.
   No labelled photos yet? Build a dataset on the **Label** page.
2. **Backbones** — compare the pretrained networks: size, ImageNet accuracy,
   speed measured on this machine, their layers and what they "see";
   **Explore features** shows how well they already separate your classes.
3. **Strategies** — train and compare linear probe, cached features, frozen base
   with augmentation, fine-tuning, from scratch; follow each run on **Training curves**,
   then try the model on new photos and export it on **Classifier**.
"""
)

left, right = st.columns(2)
with left:
    st.subheader("Try it now")
    st.write("Cats vs dogs: 2,000 training and 1,000 validation photos.")
    if st.button("Start with the sample dataset", type="primary", icon=":material/pets:"):
        st.session_state[common.PENDING] = "sample"
        st.switch_page(common.DATASET_PAGE)
with right:
    st.subheader("Or bring your own")
    st.write("A folder like `flowers/roses/*.jpg, flowers/tulips/*.jpg` "
             "(optionally inside `train/` and `validation/`), or the same as a zip.")
    st.page_link(common.DATASET_PAGE, label="Open the Dataset page", icon=":material/folder_open:")

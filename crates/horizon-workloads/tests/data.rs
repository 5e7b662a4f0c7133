//! The compiled-in data sets and their fixed splits.

use horizon_workloads::data;

fn check_images(name: &str, split: &data::Split, side: usize, n_train: usize, n_valid: usize) {
    for (part, images, n) in [("train", &split.train, n_train), ("valid", &split.valid, n_valid)] {
        assert_eq!(images.side, side, "{name} {part}");
        assert_eq!(images.len(), n, "{name} {part}");
        assert_eq!(images.pixels.len(), n * side * side, "{name} {part}");
        assert!(images.pixels.iter().all(|p| (0.0..=1.0).contains(p)), "{name} {part}: pixels in [0, 1]");
        assert!(images.pixels.contains(&1.0), "{name} {part}: scaled by the maximum pixel value");
        // Stratified: every class in its share (both data sets are nearly balanced).
        let mut counts = [0usize; 10];
        for &l in &images.labels {
            counts[l as usize] += 1;
        }
        for (class, &c) in counts.iter().enumerate() {
            assert!(c * 10 >= n * 95 / 100 && c * 10 <= n * 105 / 100, "{name} {part}: {c} of class {class}");
        }
        // Shuffled: the first 100 hold every class.
        let head: std::collections::BTreeSet<u8> = images.labels[..100].iter().copied().collect();
        assert_eq!(head.len(), 10, "{name} {part}");
    }
}

#[test]
fn digits_are_1397_training_and_400_validation_images_of_8x8() {
    let split = data::digits().unwrap();
    check_images("digits", split, 8, 1_397, 400);
    // The first row of scikit-learn's digits.csv is a 0; its pixels (row 0: 0,0,5,13,9,1,0,0)
    // end up scaled by 16 somewhere in one of the splits.
    let first = [0.0, 0.0, 5.0 / 16.0, 13.0 / 16.0, 9.0 / 16.0, 1.0 / 16.0, 0.0, 0.0];
    let found = [&split.train, &split.valid]
        .iter()
        .flat_map(|s| (0..s.len()).map(move |i| (s.image(i), s.labels[i])))
        .any(|(img, label)| img[..8] == first && label == 0);
    assert!(found);
}

#[test]
fn mnist_is_4000_training_and_1000_validation_images_of_28x28_with_the_label_last() {
    let split = data::mnist().unwrap();
    check_images("mnist", split, 28, 4_000, 1_000);
    // Pixels come first and the label last: an image's border is (nearly) blank.
    let img = split.train.image(0);
    assert!(img[..28].iter().all(|&p| p == 0.0), "first row blank");
}

#[test]
fn splits_are_fixed() {
    let a = data::digits().unwrap();
    assert_eq!(a.train.labels[..20], data::digits().unwrap().train.labels[..20]);
    // Not the file's order: the split shuffles.
    assert_ne!(a.train.labels[..20], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn jargon_is_split_90_10_with_a_byte_vocabulary() {
    let text = data::jargon().unwrap();
    let total = text.train.len() + text.valid.len();
    assert!(total > 1_600_000, "{total} bytes");
    assert_eq!(text.train.len(), total * 9 / 10);
    assert!(text.vocab.len() > 90 && text.vocab.len() <= 256, "{} symbols", text.vocab.len());
    assert!(text.vocab.windows(2).all(|w| w[0] < w[1]), "sorted, distinct bytes");
    let v = text.vocab.len() as u16;
    assert!(text.train.iter().chain(&text.valid).all(|&i| i < v));
    let decode =
        |ids: &[u16]| String::from_utf8_lossy(&ids.iter().map(|&i| text.vocab[i as usize]).collect::<Vec<_>>()).into_owned();
    assert!(decode(&text.train[..200]).contains("The Jargon File"));
}

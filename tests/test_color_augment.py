"""The batched device colour augmentation against torchvision's per-image transforms."""
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from extrema.models import TwoViewDataPreprocessor
from extrema.models.color_augment import BatchColorAugment, gaussian_blur, jitter_step, to_grayscale

TORCHVISION_OPS = {'brightness': TF.adjust_brightness, 'contrast': TF.adjust_contrast,
                   'saturation': TF.adjust_saturation, 'hue': TF.adjust_hue}


def images_with_edge_cases(batch=6, size=(20, 24)):
    images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    images[0] = images[0, :1]  # gray: hue undefined
    images[1, :, :4] = 0  # black
    images[1, :, 4:8] = 1  # white
    images[2, 0] = images[2, 1]  # ties between the max channels
    return images


@pytest.mark.parametrize('name, factors', [
    ('brightness', [0.6, 1.4, 0.9, 1.2, 1.0, 0.75]),
    ('contrast', [0.6, 1.4, 0.9, 1.2, 1.0, 0.75]),
    ('saturation', [0.8, 1.2, 0.9, 1.1, 1.0, 0.0]),
    ('hue', [-0.1, 0.1, 0.05, -0.5, 0.0, 0.5]),
])
def test_each_adjustment_equals_torchvision_per_image(name, factors):
    images = images_with_edge_cases()
    factors = torch.tensor(factors)
    op = torch.full((len(images),), list(TORCHVISION_OPS).index(name))
    ours = jitter_step(images, op, factors)
    reference = torch.stack([TORCHVISION_OPS[name](image, float(f)) for image, f in zip(images, factors)])
    torch.testing.assert_close(ours, reference, atol=2e-6, rtol=0)
    unchanged = jitter_step(images, torch.full_like(op, -1), factors)
    assert torch.equal(unchanged, images)


def test_grayscale_and_blur_equal_torchvision():
    images = images_with_edge_cases()
    torch.testing.assert_close(to_grayscale(images), TF.rgb_to_grayscale(images), atol=1e-6, rtol=0)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 1.5, 0.3])
    reference = torch.stack([TF.gaussian_blur(image, [23, 23], [float(s)] * 2) for image, s in zip(images, sigma)])
    torch.testing.assert_close(gaussian_blur(images, sigma, 23), reference, atol=2e-6, rtol=0)


def test_each_image_gets_its_own_draw_in_its_own_order():
    """Replaying each image's drawn parameters through torchvision, in its drawn
    order, gives the batched result."""
    augment = BatchColorAugment(blur_prob=0.5, solarize_prob=0.5)
    images = images_with_edge_cases(batch=32)
    params = augment.sample_params(32, torch.Generator().manual_seed(1))
    ours = augment.apply(images, params)
    assert len(set(map(tuple, params['order'].tolist()))) > 10  # many of the 24 orders occur
    for i, image in enumerate(images):
        if params['jitter'][i]:
            for op_index in params['order'][i].tolist():
                name = list(TORCHVISION_OPS)[op_index]
                image = TORCHVISION_OPS[name](image, float(params['factors'][i, op_index]))
        if params['grayscale'][i]:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        if params['blur'][i]:
            image = TF.gaussian_blur(image, [23, 23], [float(params['sigma'][i])] * 2)
        if params['solarize'][i]:
            image = TF.solarize(image, 128 / 255)
        torch.testing.assert_close(ours[i], image, atol=1e-5, rtol=0, msg=f'image {i}')


def test_draws_follow_the_configured_distributions():
    augment = BatchColorAugment(0.4, 0.4, 0.2, 0.1, jitter_prob=0.8, grayscale_prob=0.2,
                                blur_prob=0.5, solarize_prob=0.2)
    params = augment.sample_params(20000, torch.Generator().manual_seed(0))
    for key, p in [('jitter', 0.8), ('grayscale', 0.2), ('blur', 0.5), ('solarize', 0.2)]:
        assert abs(params[key].float().mean().item() - p) < 0.015, key
    low = params['factors'].min(dim=0).values
    high = params['factors'].max(dim=0).values
    torch.testing.assert_close(low, torch.tensor([0.6, 0.6, 0.8, -0.1]), atol=2e-3, rtol=0)
    torch.testing.assert_close(high, torch.tensor([1.4, 1.4, 1.2, 0.1]), atol=2e-3, rtol=0)
    assert 0.1 <= params['sigma'].min() and params['sigma'].max() <= 2.0
    # every op is equally likely at every position of the random order
    counts = torch.stack([(params['order'] == op).float().mean(dim=0) for op in range(4)])
    torch.testing.assert_close(counts, torch.full((4, 4), 0.25), atol=0.015, rtol=0)


def test_calling_the_augmentation_draws_then_applies():
    augment = BatchColorAugment(blur_prob=0.5, solarize_prob=0.5)
    images = images_with_edge_cases(batch=8)
    called = augment(images, torch.Generator().manual_seed(4))
    replayed = augment.apply(images, augment.sample_params(8, torch.Generator().manual_seed(4)))
    assert torch.equal(called, replayed) and not torch.equal(called, images)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='hue'):
        BatchColorAugment(hue=0.7)
    with pytest.raises(ValueError, match='odd'):
        BatchColorAugment(blur_kernel_size=22)


def test_selecting_computed_rows_equals_computing_only_those_rows(monkeypatch):
    """The GPU/compiled path (every row computed, then selected) and the CPU path
    (only the selected rows computed) give the same images."""
    augment = BatchColorAugment(blur_prob=0.5, solarize_prob=0.5)
    images = images_with_edge_cases(batch=16)
    params = augment.sample_params(16, torch.Generator().manual_seed(2))
    rows_only = augment.apply(images, params)
    monkeypatch.setattr(torch.compiler, 'is_compiling', lambda: True)
    every_row = augment.apply(images, params)
    torch.testing.assert_close(every_row, rows_only, atol=1e-6, rtol=0)


def expected_views(preprocessor, crops, seed):
    """The views replayed op by op: the draws in the preprocessor's order, the colour on
    [0, 1] pixels, then (255 x - mean) / std."""
    torch.manual_seed(seed)
    return [(color.apply(crops.float() / 255, color.sample_params(len(crops))) * 255 - preprocessor.mean)
            / preprocessor.std for color in (preprocessor.student_color, preprocessor.teacher_color)]


def test_preprocessor_views_are_the_normalised_colour_draws():
    crops = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    preprocessor = TwoViewDataPreprocessor(color_mode='color_teacher_extra')
    torch.manual_seed(3)
    views = preprocessor(dict(inputs=crops.clone()), True)['inputs']
    for view, expected in zip(views, expected_views(preprocessor, crops, seed=3)):
        assert view.dtype == torch.float32
        torch.testing.assert_close(view, expected, atol=2e-5, rtol=0)


def test_compiled_views_are_one_graph_and_equal_eager():
    """What runs on CUDA: both views from the uint8 crops in one compiled graph
    (fullgraph: no graph break), equal to the eager views."""
    crops = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    preprocessor = TwoViewDataPreprocessor(color_mode='color_teacher_extra')
    params = [color.sample_params(4, torch.Generator().manual_seed(i))
              for i, color in enumerate((preprocessor.student_color, preprocessor.teacher_color))]
    compiled = torch.compile(preprocessor.color_views, dynamic=False, fullgraph=True)
    for view, eager in zip(compiled(crops, *params), preprocessor.color_views(crops, *params)):
        torch.testing.assert_close(view, eager, atol=5e-5, rtol=0)

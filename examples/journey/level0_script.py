"""The script-to-pipeline journey (docs/journey.md): a U-Net learns to segment shapes."""

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tipi.vision.shapes import ShapesDataset
from tipi.vision.unet import UNet


def train_step(model: torch.nn.Module, batch: list[torch.Tensor], optimizer: torch.optim.Optimizer,
               device: torch.device) -> float:
    """One optimisation step on one batch: the same code at every level."""
    inputs, targets = batch
    inputs, targets = inputs.to(device), targets.to(device)
    optimizer.zero_grad()
    loss = F.cross_entropy(model(inputs), targets)
    loss.backward()
    optimizer.step()
    return loss.item()


if __name__ == "__main__":
    epochs, lr = 2, 3e-3
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    loader = DataLoader(ShapesDataset(64, image_size=32), batch_size=16, shuffle=True)
    model = UNet(num_classes=ShapesDataset.num_classes, base_channels=8, depth=2).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        losses = []
        for batch in loader:
            losses.append(train_step(model, batch, optimizer, device))
        loss = sum(losses) / len(losses)
        print(f"epoch {epoch}: loss {loss:.4f}")
